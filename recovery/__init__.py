"""Everything that talks to an exchange (placeholder; filled in by later issues)."""
