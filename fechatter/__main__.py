"""`python -m fechatter --role=api`: the same as the `fechatter` command."""

from fechatter import run

if __name__ == "__main__":
    run()
