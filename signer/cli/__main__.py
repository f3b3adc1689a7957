from signer.cli import main

main()
