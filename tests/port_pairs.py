"""The IVIF pairs of ../shared/reference/outputs that every port's parity is checked on."""

ALL = (
    "RoadScene_FLIR_00211", "RoadScene_FLIR_00977", "RoadScene_FLIR_01130", "RoadScene_FLIR_04269",
    "RoadScene_FLIR_04424", "RoadScene_FLIR_04484", "TNO_01", "TNO_02", "TNO_03", "TNO_04", "TNO_05", "TNO_06",
)
