"""Business rules of the four services; unaware of how they are called."""
