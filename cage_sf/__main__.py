from cage_sf.cli import main

raise SystemExit(main())
