"""Deployment files: docker-compose.yml, the Dockerfile and the commands they run."""
