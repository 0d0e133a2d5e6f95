"""A producer's Protobuf message, ``news.Article``, built without ``protoc``.

What ``protoc --python_out`` would generate from::

    syntax = "proto3";
    package news;
    message Article {
      int64 article_id = 1;
      string body = 2;
      optional string headline = 3;
    }

The file descriptor is constructed by hand, added to the default descriptor pool and its
message class made by ``message_factory.GetMessageClass``, so ``--input-protobuf-message
tests.integration.article_pb2:Article`` imports it in the consumer process as it would a
generated module.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

FILE_NAME = "tests/integration/article.proto"
PACKAGE = "news"


def _file_descriptor_proto() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(name=FILE_NAME, package=PACKAGE, syntax="proto3")
    message = proto.message_type.add(name="Article")
    field = descriptor_pb2.FieldDescriptorProto
    message.field.add(
        name="article_id", number=1, type=field.TYPE_INT64, label=field.LABEL_OPTIONAL
    )
    message.field.add(name="body", number=2, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    # proto3 ``optional``: a synthetic one-field oneof, so presence is tracked.
    message.oneof_decl.add(name="_headline")
    message.field.add(
        name="headline",
        number=3,
        type=field.TYPE_STRING,
        label=field.LABEL_OPTIONAL,
        oneof_index=0,
        proto3_optional=True,
    )
    return proto


def _message_class() -> Any:
    pool = descriptor_pool.Default()
    try:
        file = pool.FindFileByName(FILE_NAME)  # imported twice (e.g. under another name)
    except KeyError:
        file = pool.Add(_file_descriptor_proto())
    return message_factory.GetMessageClass(file.message_types_by_name["Article"])


#: The ``news.Article`` message class (fields ``article_id``, ``body``, ``headline``).
Article: Any = _message_class()
