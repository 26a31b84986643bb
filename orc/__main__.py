import sys

from orc.cmd.main import main

sys.exit(main())
