"""The HTTP facade: thin quart-trio apps that turn requests into actor messages."""
