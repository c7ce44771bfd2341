from dtmfgraph.cli import main

main()
