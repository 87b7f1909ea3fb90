"""`python -m ledgerctl`: the same command as the installed `ledgerctl`."""

from ledgerctl.main import main

main()
