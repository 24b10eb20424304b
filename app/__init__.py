"""modelzoo's FastAPI service."""
