"""launch() after a failed launch(): PostgreSQL unreachable at start-up (a closed loopback port)."""

import asyncio
import socket

from dbos import DBOS
from wf import config


async def main() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()   # nothing listens there now
    DBOS(config=config(f"postgresql://u:p@127.0.0.1:{port}/x", "lr"))
    for attempt in (1, 2):
        try:
            DBOS.launch()
            print(f"attempt {attempt}: launch() returned without error")
        except Exception as exc:
            print(f"attempt {attempt}: launch() raised {type(exc).__name__}")
    try:
        await DBOS.list_workflows_async(limit=1)
        print("after that, DBOS works")
    except Exception as exc:
        print(f"after that, a DBOS call raises {type(exc).__name__}: {str(exc)[:90]}")
    await asyncio.to_thread(DBOS.destroy)


asyncio.run(main())
