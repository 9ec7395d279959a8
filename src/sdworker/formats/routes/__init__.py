"""The dialects' HTTP routes (FastAPI); the translations they call live one level up."""
