import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Image(_message.Message):
    __slots__ = ("floats", "uint8")
    FLOATS_FIELD_NUMBER: _ClassVar[int]
    UINT8_FIELD_NUMBER: _ClassVar[int]
    floats: _containers.RepeatedScalarFieldContainer[float]
    uint8: bytes
    def __init__(self, floats: _Optional[_Iterable[float]] = ..., uint8: _Optional[bytes] = ...) -> None: ...

class Prediction(_message.Message):
    __slots__ = ("digit", "p_three", "model_version", "known", "ood_score")
    DIGIT_FIELD_NUMBER: _ClassVar[int]
    P_THREE_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    OOD_SCORE_FIELD_NUMBER: _ClassVar[int]
    digit: int
    p_three: float
    model_version: str
    known: bool
    ood_score: float
    def __init__(self, digit: _Optional[int] = ..., p_three: _Optional[float] = ..., model_version: _Optional[str] = ..., known: _Optional[bool] = ..., ood_score: _Optional[float] = ...) -> None: ...

class ClassifyRequest(_message.Message):
    __slots__ = ("image", "request_id")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    image: Image
    request_id: str
    def __init__(self, image: _Optional[_Union[Image, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class ClassifyResponse(_message.Message):
    __slots__ = ("prediction", "request_id")
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    prediction: Prediction
    request_id: str
    def __init__(self, prediction: _Optional[_Union[Prediction, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class ClassifyBatchRequest(_message.Message):
    __slots__ = ("images",)
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[Image]
    def __init__(self, images: _Optional[_Iterable[_Union[Image, _Mapping]]] = ...) -> None: ...

class ClassifyBatchResponse(_message.Message):
    __slots__ = ("predictions", "model_version")
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    predictions: _containers.RepeatedCompositeFieldContainer[Prediction]
    model_version: str
    def __init__(self, predictions: _Optional[_Iterable[_Union[Prediction, _Mapping]]] = ..., model_version: _Optional[str] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "alias", "version", "run_id", "test_accuracy", "loaded_at", "recipe", "refused_version", "refused_reason", "can_abstain", "ood_threshold", "replica", "expected_neither_share", "shadow")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TEST_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    LOADED_AT_FIELD_NUMBER: _ClassVar[int]
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    REFUSED_VERSION_FIELD_NUMBER: _ClassVar[int]
    REFUSED_REASON_FIELD_NUMBER: _ClassVar[int]
    CAN_ABSTAIN_FIELD_NUMBER: _ClassVar[int]
    OOD_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_NEITHER_SHARE_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    name: str
    alias: str
    version: str
    run_id: str
    test_accuracy: float
    loaded_at: _timestamp_pb2.Timestamp
    recipe: str
    refused_version: str
    refused_reason: str
    can_abstain: bool
    ood_threshold: float
    replica: str
    expected_neither_share: float
    shadow: Shadow
    def __init__(self, name: _Optional[str] = ..., alias: _Optional[str] = ..., version: _Optional[str] = ..., run_id: _Optional[str] = ..., test_accuracy: _Optional[float] = ..., loaded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., recipe: _Optional[str] = ..., refused_version: _Optional[str] = ..., refused_reason: _Optional[str] = ..., can_abstain: _Optional[bool] = ..., ood_threshold: _Optional[float] = ..., replica: _Optional[str] = ..., expected_neither_share: _Optional[float] = ..., shadow: _Optional[_Union[Shadow, _Mapping]] = ...) -> None: ...

class Shadow(_message.Message):
    __slots__ = ("alias", "version", "compared", "agreement", "dropped")
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    COMPARED_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    alias: str
    version: str
    compared: int
    agreement: float
    dropped: int
    def __init__(self, alias: _Optional[str] = ..., version: _Optional[str] = ..., compared: _Optional[int] = ..., agreement: _Optional[float] = ..., dropped: _Optional[int] = ...) -> None: ...
