// ListenerApp: see README.md (Architecture).
