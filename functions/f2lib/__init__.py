"""f2lib: the library shared by the f2pipe functions, the bridge and the local runtime."""
