"""Hand-run probes and diagnoses of smol-llava (never run by the tests): ``python -m organism.probes.NAME``
from the repository root. What each measures: organism/README.md."""
