"""Train a 3-versus-7 MNIST classifier, track it in MLflow and register it."""
