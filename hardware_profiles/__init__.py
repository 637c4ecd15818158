"""Hardware profiles (TOML) and their loader."""
