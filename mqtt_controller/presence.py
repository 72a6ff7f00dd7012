# Presence tracker: turns tag sightings from one or more RFID readers into a cart, i.e. the
# number of distinct EPCs per product code. Pure (no I/O, ints and dicts only).
#
# Time is cut into polling cycles by the caller: saw(epc, rssi) during a cycle, end_cycle() at
# its end. A tag is present once it was seen at rssi >= rssi_min in `presence` consecutive
# cycles, and leaves after `absence` cycles in a row without such a sighting. Sightings from
# several readers simply merge (any reader counts), so a reader that is gone keeps its tags in
# the cart until the absence window has passed. end_cycle() returns [(code, count), ...] for the
# codes whose count changed, sorted by code; a count of 0 means the product left.
from mqtt_controller.yrm100 import product_code

MAX_EPCS = 512  # distinct EPCs tracked at once (present or candidate); beyond: counted, ignored


class Tracker:
    def __init__(self, rssi_min=-58, presence=1, absence=2, max_epcs=MAX_EPCS):
        if presence < 1 or absence < 1:
            raise ValueError("presence and absence must be at least 1 cycle")
        self.rssi_min = rssi_min
        self.presence = presence
        self.absence = absence
        self.max_epcs = max_epcs
        self.bad_code = 0  # sightings whose EPC does not start with a valid product code
        self.overflow = 0  # sightings dropped because max_epcs EPCs were already tracked
        self.weak = 0  # sightings below rssi_min
        self.reset()

    def reset(self):
        # epc -> code; epc -> consecutive cycles seen (candidates) ; epc -> missed cycles (present)
        self._code = {}
        self._hits = {}
        self._missed = {}
        self._present = {}  # epc -> True once counted
        self._seen = {}  # epcs seen strongly in the current cycle
        self._counts = {}  # code -> present EPCs

    def saw(self, epc, rssi):
        """One tag read in the current cycle. Returns True when it was taken into account."""
        if rssi < self.rssi_min:
            self.weak += 1
            return False
        epc = bytes(epc)
        code = self._code.get(epc)
        if code is None:
            code = product_code(epc)
            if code is None:
                self.bad_code += 1
                return False
            if len(self._code) >= self.max_epcs:
                self.overflow += 1
                return False
            self._code[epc] = code
            self._hits[epc] = 0
        self._seen[epc] = True
        return True

    def end_cycle(self):
        changed = {}  # code -> count before this cycle
        gone = []
        for epc in self._code:
            code = self._code[epc]
            if epc in self._seen:
                if epc in self._present:
                    self._missed[epc] = 0
                else:
                    h = self._hits[epc] + 1
                    self._hits[epc] = h
                    if h >= self.presence:
                        self._present[epc] = True
                        self._missed[epc] = 0
                        n = self._counts.get(code, 0)
                        if code not in changed:
                            changed[code] = n
                        self._counts[code] = n + 1
            elif epc in self._present:
                m = self._missed[epc] + 1
                self._missed[epc] = m
                if m >= self.absence:
                    gone.append(epc)
                    n = self._counts[code]
                    if code not in changed:
                        changed[code] = n
                    if n > 1:
                        self._counts[code] = n - 1
                    else:
                        del self._counts[code]
            else:  # a candidate must be seen in consecutive cycles
                gone.append(epc)
        for epc in gone:
            del self._code[epc]
            del self._hits[epc]
            if epc in self._present:
                del self._present[epc]
                del self._missed[epc]
        self._seen = {}
        out = []
        for code in changed:
            n = self._counts.get(code, 0)
            if n != changed[code]:
                out.append((code, n))
        out.sort()
        return out

    def counts(self):
        """The cart as {code: distinct present EPCs} (a copy)."""
        return dict(self._counts)

    def tracked(self):
        return len(self._code)
