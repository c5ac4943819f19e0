// CallbackStore: see README.md (Architecture).
