// ThingSpaceSandbox: see README.md (Architecture).
