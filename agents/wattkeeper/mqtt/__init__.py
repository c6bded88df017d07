"""The live view: readings as Home Assistant sensors over MQTT discovery (optional).

``live`` keeps the newest value of each sensor, fed by the runner after each commit;
``publisher`` sends them from its own thread with paho-mqtt; ``discovery`` builds the
topics and Home Assistant's discovery messages. paho is imported only when an agent's
file has an [mqtt] section, so agents without one do not pay for it.
"""
