"""What a run uses when nothing is named: the offline model, no defense, the offline suite."""

OFFLINE_SUITE = ("figstep-tiny", "xstest", "easyvqa")
DEFAULT_MODEL = "smol-llava"
DEFAULT_DEFENSE = "none"
