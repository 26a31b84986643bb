import sys

from orc.cli import main

sys.exit(main())
