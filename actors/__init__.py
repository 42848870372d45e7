"""Ray actor shells: receive, call the core, persist. Fault tolerance lives here."""
