"""Azure ML's ARM-shaped API (what azure-ai-ml's MLClient calls), under /api/subscriptions/...."""
