from surveil.cli import main

raise SystemExit(main())
