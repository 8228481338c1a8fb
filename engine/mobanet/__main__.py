from mobanet.cli import main

raise SystemExit(main())
