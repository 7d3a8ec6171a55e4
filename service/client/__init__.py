"""`python -m service.client`: a command-line client of the service, with the image handling it needs."""
