"""Local stand-ins for external services, each a real server on 127.0.0.1."""
