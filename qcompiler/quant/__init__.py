"""Post-training quantization: observers, calibration, range rules, the int8 graph, bias
correction, activation equalization and the per-layer report (`ptq.run_ptq` ties them)."""
