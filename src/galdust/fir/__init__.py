"""Far-infrared dust properties from UV–MIR photometry (global model; per-pixel maps to come)."""
