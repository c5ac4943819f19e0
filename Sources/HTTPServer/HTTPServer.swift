// HTTPServer: see README.md (Architecture).
