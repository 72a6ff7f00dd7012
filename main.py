# Board start-up, part 2: run the basket controller with settings from config.json (safe mode
# skips it; see README "Flash an ESP32 basket"). board.main() first lets the loader pick the
# version: an update in /ota/v/<V> wins over the factory code (otaboot.py).
from mqtt_controller import board

board.main()
