// Benchmark server: see bench/README.md.
print("not yet")
