# Board start-up, part 2: run the basket controller with settings from config.json
# (safe mode skips it; see README "Flash an ESP32 basket").
from mqtt_controller import board

board.main()
