from maild.cli import main

# Guarded: worker processes (spawn/forkserver) import this module again as __mp_main__.
if __name__ == "__main__":
    raise SystemExit(main())
