"""What defenses (and the model adapters they drive) share: the Defense base class, the VLM adapter
interface, activation-steering hooks, calibration artifacts and the scorers some defenses call."""
