import SmolVM
print("cli")
