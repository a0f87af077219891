"""Training, evaluation and data tools (installed as ``starpose_training``)."""
