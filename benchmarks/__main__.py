"""Entry point: ``python -m benchmarks`` (streaming, see `benchmarks.run`) or ``python -m benchmarks embed``."""

import sys

if sys.argv[1:2] == ["embed"]:
    from benchmarks.embed import main as embed_main

    sys.exit(embed_main(sys.argv[2:]))

from benchmarks.run import main

sys.exit(main())
