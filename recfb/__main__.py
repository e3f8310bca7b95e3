from recfb.cli.main import main

raise SystemExit(main())
