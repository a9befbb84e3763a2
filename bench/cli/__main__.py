from tritbench.cli import main

main()
