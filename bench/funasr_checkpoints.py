"""Build the random-weight FunASR model dirs (tests/lingting_testkit/funasr_checkpoints.py):

    python -m bench.funasr_checkpoints DIR [--size tiny]"""

from lingting_testkit.funasr_checkpoints import main

if __name__ == "__main__":
    main()
