"""`python -m benchbd` (and `torchrun ... -m benchbd run ...`): the same command as `benchbd`."""

from benchbd.cli import main

if __name__ == "__main__":
    main()
