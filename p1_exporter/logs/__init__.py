"""Log output: formats and the rate limiter that keeps recurring conditions to few lines."""
