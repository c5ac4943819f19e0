// ThingSpace: see README.md (Architecture).
