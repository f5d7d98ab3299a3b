"""The fleet coordinator across sites: traffic split, geo-shifting, and its configuration."""
