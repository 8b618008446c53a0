from actors.pubsub import serve
from actors.runtime import main

main("iii-pubsub", serve, description="Topic publish/subscribe with subscribe triggers")
