/* sh_schema_json.h — the .avsc files of schemas/ embedded as C strings (internal to schemas/;
 * use sh_registry_embedded_json()). Generated definitions: sh_schema_json.c via embed.sh. */
#ifndef SH_SCHEMA_JSON_H
#define SH_SCHEMA_JSON_H

extern const char sh_json_audio_event_v1[];
extern const char sh_json_audio_event_v2[];
extern const char sh_json_audio_event_v3[];
extern const char sh_json_dead_letter_v1[];
extern const char sh_json_index_delta_v1[];

#endif
