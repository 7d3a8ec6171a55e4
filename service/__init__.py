"""A gRPC service that classifies 3s and 7s with the model the MLflow registry's alias points at."""
