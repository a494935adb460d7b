"""ReefLab's built-in federated task as a Flower App (ServerApp + ClientApp), run with `flwr run`."""
