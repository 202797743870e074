"""StepRun versus Job: the same steps run both ways on one cluster, measured side by side."""
