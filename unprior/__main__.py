from unprior.cli import main

raise SystemExit(main())
